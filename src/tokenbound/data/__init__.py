"""Corpora, tokenizers, the TokenStore, context rules and samplers."""

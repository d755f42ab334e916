"""Scoring (model + store + rule + sampler -> TokenStats), `bound` and `verify`."""

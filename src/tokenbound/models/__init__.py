"""Language models behind one interface: GPT with structured layers, subspace, Hugging Face/GGUF, Markov chains."""

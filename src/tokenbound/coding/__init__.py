"""Message lengths: entropy coding, codebook quantization, QAT, archives, PTQ, and the CompressedModel artifact."""

"""The compress stage (`tokenbound compress`): a model -> a CompressedModel, using the codecs of ``coding/``.

``stage`` is the verb's function; ``run`` compresses a trained Run (quant, level grid, QAT via ``qat``);
``ptq`` quantizes pretrained HF / GGUF models; ``archive`` compresses any model's files with the best
general-purpose codec; ``inputs`` finds and records the source and the stores used.
"""

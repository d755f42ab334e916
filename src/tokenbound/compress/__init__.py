"""The compress stage (`tokenbound compress`): a model -> a CompressedModel, using the codecs of ``coding/``.

``stage`` is the verb's function; ``run`` compresses a trained Run (quant, level grid, QAT via ``qat``);
``ptq`` quantizes pretrained HF / GGUF models; ``inputs`` finds and records the source and the stores used.
"""

"""Reference implementations for ``remap verify``, one small module per rule file name.

An adapter module ``remap.adapters.<rule file name>`` (dashes become
underscores) defines::

    def reference(source: remap.source.Source, wave: torch.Tensor) -> dict[str, torch.Tensor]

It builds the original model with the original project's code (s3prl's
reference modules, installed without torchaudio) from the checkpoint's state
dict and config, as remap read them (nothing in the file is executed), and
returns hidden states named ``layer1``..``layerN`` (each transformer layer's
output, batch-first) and ``final`` (the encoder's last output). It may add
``logits``. ``remap verify`` computes the same names from the converted
transformers model and compares them. This is the only model-specific Python
in remap.
"""

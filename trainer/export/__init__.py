"""`rlvr export`: ship a trained model to a laptop or phone as an HF directory or a llama.cpp GGUF file, and
prove that the file answers like the model it came from.

Files: source.py (load a model dir, merge a LoRA adapter), hf.py (the HF format), llama_layout.py (HF Llama
tensors -> GGUF names and llama.cpp's q/k row order), vocab.py (tokenizer metadata), gguf_writer.py (the GGUF
format), integrity.py (reject corrupted or truncated files), probes.py (the probe prompts), readers.py (the HF,
transformers-GGUF and llama.cpp runners), verify.py (the agreement checks), exporter.py (write, verify,
measure), cli.py (the command).

A new output format: a module with `write_<format>(merged, out, ...)` beside hf.py and gguf_writer.py, a choice
in cli.FORMATS, and a check in verify.py. A new architecture: a layout module like llama_layout.py.
"""

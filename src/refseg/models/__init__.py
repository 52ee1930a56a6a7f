"""The architectures. Importing this package registers each with the transformers Auto classes."""

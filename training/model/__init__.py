"""The model and how it is trained: backbones and their weights, the head, the fine-tune (TensorFlow, and
JAX for a machine without it), optimizers, augmentation, and the trained model as the app reads it."""

"""The teacher side of distillation: serving a teacher model and sampling chain-of-thought from it."""

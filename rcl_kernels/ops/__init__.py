"""Public ops: validation, backend choice and torch.library registration (fake + autograd)."""

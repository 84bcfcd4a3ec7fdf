"""The adapter tests' venues come from ``adapter_support`` (importable by name here)."""

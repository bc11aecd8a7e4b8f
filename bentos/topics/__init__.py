"""Topics: a short text in, its broad academic field with a score out (seed 003)."""

"""Data lifecycle: retention policy, read-time hiding, the sweeper, legal holds, erasure, export, audit."""

"""Test helpers shared across test packages: a real llama.cpp server fixture and a fault-injecting proxy."""

"""The README's commands: each one is run by a test here, or mapped to the test that runs it."""

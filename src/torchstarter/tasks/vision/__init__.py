"""Image code shared by the image tasks (SIGNS, images): decoding any file to upright
8-bit RGB, fitting it to a square, and finding duplicate pictures across splits."""

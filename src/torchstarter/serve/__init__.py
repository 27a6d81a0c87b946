"""`torchstarter serve`: a trained model behind a small HTTP server, with a page to try it."""

"""Tokenizer, refined-prior model, latent generator and EMA."""

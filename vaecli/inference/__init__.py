"""Using a trained model: batched encode and decode, generation (greedy, beam, sampling), latent arithmetic."""

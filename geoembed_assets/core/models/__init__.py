"""Models trained on embeddings (issue 12): a missing-date ConvLSTM and an embedding GAN, each with a raw twin."""

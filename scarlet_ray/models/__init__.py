"""Where models come from and how they load (generator, encoder, NER)."""

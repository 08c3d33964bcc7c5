"""Record linkage of patient identities: comparison of traits between two records."""

"""What a run writes for people: the model card's sections and the evaluation's plots."""

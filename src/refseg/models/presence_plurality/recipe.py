"""The presence & plurality paper's training recipe (Kim et al., AAAI 2026, Sec. 4.2).

"AdamW with weight decay 0.01; the learning rate is 2.5e-6 for the backbone networks and 2.5e-5 for the other
components, with polynomial decay (power 0.9)". The backbone networks are the pretrained Swin-B
(``model.backbone.model``) and BERT-base (``model.text_encoder.model``, all of it, embeddings included); the
pixel-word attention and language gates inside the Swin stages are new, so they train at the higher rate with
the other components. The paper states no clipping or warm-up: none. Weight decay spares normalisation layers
and position tables, as in LAVT's optimizer.
"""

from ...training.recipes import LearningRateGroup, TrainingRecipe

RECIPES: dict[str, TrainingRecipe] = {
    "paper": TrainingRecipe(
        name="paper",
        source="presence & plurality (Kim et al., AAAI 2026) Sec. 4.2",
        learning_rate=2.5e-5,
        groups=(
            LearningRateGroup(
                "backbone", 2.5e-6, modules=("model.backbone.model", "model.text_encoder.model")
            ),
        ),
        weight_decay=0.01,
        no_decay="norms_and_position_tables",
        schedule="poly",
        power=0.9,
        max_grad_norm=0.0,
    ),
}

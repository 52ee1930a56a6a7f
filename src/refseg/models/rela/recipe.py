"""ReLA's training recipe, as in the released code its checkpoints were trained with (``referring_*.yaml``).

The released configs and optimizer (Liu, Ding, Jiang, CVPR 2023): AdamW at 1e-5, weight decay 0.05 except
on normalisation layers, ``nn.Embedding`` tables (the region queries, the decoder's level embedding) and
Swin's relative-position tables; one extra group for BERT layers 0-9 at the same rate, with weight decay on
all of their parameters (LayerNorms included); BERT's embeddings and its last two layers are never updated
(they are in no parameter group); the global gradient norm clipped at 0.01 every step; x0.1 at 110k and
140k of 150k iterations (detectron2's ``WarmupMultiStepLR`` with a no-op warm-up); a global batch of 48.
``SOLVER.BACKBONE_MULTIPLIER: 0.1`` is in the configs but the optimizer never reads it: the backbone trains
at 1e-5 like everything else (``docs/models/rela.md``).
"""

from ...training.recipes import LearningRateGroup, TrainingRecipe

_BERT = "model.text_encoder.model"

RECIPES: dict[str, TrainingRecipe] = {
    "paper": TrainingRecipe(
        name="paper",
        source="the released ReLA code and configs (GRES, CVPR 2023)",
        optimizer="adamw",
        learning_rate=1e-5,
        groups=(
            LearningRateGroup(
                "text_encoder", 1e-5, modules=(f"{_BERT}.encoder.layer[:10]",), no_decay="none"
            ),
        ),
        weight_decay=0.05,
        no_decay="norms_embeddings_and_position_tables",
        frozen_modules=(f"{_BERT}.embeddings", f"{_BERT}.encoder.layer[10:]"),
        schedule="multistep_steps",
        milestones=(110_000, 140_000),
        gamma=0.1,
        train_steps=150_000,
        batch_size=48,
        max_grad_norm=0.01,
    ),
}

"""InstAlign's training recipe (Sec. 4.1 and supplementary Sec. 8): AdamW, lr 1e-4 decreasing linearly to 1e-6.

The paper states no parameter groups, weight decay, warm-up or clipping: those stay refseg's generic ones
(:data:`refseg.training.recipes.GENERIC`).
"""

from dataclasses import replace

from ...training.recipes import GENERIC, TrainingRecipe

RECIPES: dict[str, TrainingRecipe] = {
    "paper": replace(
        GENERIC, name="paper", source="InstAlign Sec. 4.1 / supp. Sec. 8; unstated parts generic"
    ),
}

"""METRIS's training recipes (Appendix A, "Experimental Settings").

"We used the AdamW optimizer with initial learning rate of 3e-5 and adopted the polynomial learning rate decay
scheduler. [...] For gRefCOCO that contains no-target samples, we used a no-target classifier (Liu et al.,
2023a)." Unstated, as in the LAVT code METRIS builds on: power 0.9 per iteration down to 0, weight decay 0.01
except on normalisation layers and position tables, no warm-up, no clipping, one learning rate for every
parameter. ``paper`` is the RefCOCO/+/g recipe; ``paper-grefcoco`` is the same optimisation with the no-target
classifier of Appendix A switched on (``no_target_head=True``).
"""

from dataclasses import replace

from ...training.recipes import TrainingRecipe

_PAPER = TrainingRecipe(
    name="paper",
    source="METRIS Sec. 4.1 and Appendix A; unstated parts from LAVT's code",
    learning_rate=3e-5,
    weight_decay=0.01,
    no_decay="norms_and_position_tables",
    schedule="poly",
    power=0.9,
    max_grad_norm=0.0,
)

RECIPES: dict[str, TrainingRecipe] = {
    "paper": _PAPER,
    "paper-grefcoco": replace(
        _PAPER,
        name="paper-grefcoco",
        source="METRIS Appendix A, gRefCOCO (with the no-target classifier); unstated parts from LAVT's code",
        model_config=(("no_target_head", True),),
    ),
}

"""InstanceVG's training recipes, as in the released code its checkpoints were trained with.

Paper Sec. 4.3: Adam, 5e-5 for the multi-modality encoder (BEiT-3, ``model.encoder``), 5e-4 for the rest, x0.1
at the 7th of 10 epochs (RefCOCO/+/g: at the 15th of 20). The released code adds: AMSGrad, betas (0.9, 0.98),
eps 1e-9, no weight decay, the global gradient norm clipped at 0.15 every step, and an epoch-wise step schedule
with a linear warm-up (1 epoch for the generalized benchmarks, 3 for RefCOCO/+/g).
"""

from dataclasses import replace

from ...training.recipes import LearningRateGroup, TrainingRecipe

_GENERALIZED = TrainingRecipe(
    name="paper",
    source="the released InstanceVG code, gRefCOCO / Ref-ZOM / R-RefCOCO (paper Sec. 4.3)",
    optimizer="adam",
    amsgrad=True,
    betas=(0.9, 0.98),
    eps=1e-9,
    learning_rate=5e-4,
    groups=(LearningRateGroup("beit3", 5e-5, modules=("model.encoder",)),),
    weight_decay=0.0,
    no_decay="none",
    schedule="multistep",
    milestones=(7,),
    gamma=0.1,
    warmup_epochs=1,
    max_grad_norm=0.15,
)

RECIPES: dict[str, TrainingRecipe] = {
    "paper": _GENERALIZED,
    "paper-refcoco": replace(
        _GENERALIZED,
        name="paper-refcoco",
        source="the released InstanceVG code, RefCOCO/+/g (paper Sec. 4.3)",
        milestones=(15,),
        warmup_epochs=3,
    ),
}

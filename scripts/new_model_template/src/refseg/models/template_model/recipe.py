"""TemplateModel's training recipe. TODO(paper): the paper's optimiser, rates and schedule (section).

``refseg.training.get_recipe("paper", "template_model")`` returns it; ``examples/train.py --recipe paper``
trains with it. Learning-rate groups select parameters by module path (``model.get_submodule(path)``).
"""

from ...training.recipes import LearningRateGroup, TrainingRecipe

RECIPES: dict[str, TrainingRecipe] = {
    "paper": TrainingRecipe(
        name="paper",
        source="TODO(paper): authors, venue year, section",
        learning_rate=1e-4,
        # the pretrained text encoder at a tenth of the rate of the new parts
        groups=(LearningRateGroup("text_encoder", 1e-5, modules=("model.text_encoder.model",)),),
        weight_decay=0.01,
        no_decay="generic",
        schedule="poly",
        power=0.9,
        max_grad_norm=0.0,
    ),
}

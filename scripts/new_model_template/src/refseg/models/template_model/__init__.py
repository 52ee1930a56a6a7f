"""TemplateModel (TODO(paper): authors, "title", venue year): TODO(paper) one sentence on what it adds."""

from .configuration_template_model import TemplateModelConfig
from .image_processing_template_model import TemplateModelImageProcessor
from .modeling_template_model import (
    TemplateModelForReferringSegmentation,
    TemplateModelModel,
    TemplateModelOutput,
    TemplateModelPreTrainedModel,
)
from .processing_template_model import TemplateModelProcessor

__all__ = [
    "TemplateModelConfig",
    "TemplateModelForReferringSegmentation",
    "TemplateModelImageProcessor",
    "TemplateModelModel",
    "TemplateModelOutput",
    "TemplateModelPreTrainedModel",
    "TemplateModelProcessor",
]

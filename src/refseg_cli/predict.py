"""``refseg predict``: segment what a sentence refers to in your own image, with any refseg model."""

from __future__ import annotations

import argparse

from refseg.demo_notice import demo_model_notice

from ._common import add_model_arguments, check_thresholds, describe


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``refseg predict``'s options (image, sentences, model, thresholds) to ``parser``."""
    parser.add_argument("--image", required=True, help="image path or URL")
    parser.add_argument(
        "--text", required=True, action="append", help="referring sentence (repeat --text for several)"
    )
    add_model_arguments(parser, "default: the demo model bundled with refseg")
    parser.add_argument("--output", default=None, help="write an overlay picture here (e.g. overlay.png)")
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds to wait for an image URL (default 30)"
    )


def run(args: argparse.Namespace) -> int:
    """Segment what each ``--text`` refers to in ``--image``; print the results, optionally draw them."""
    from refseg.image_utils import DEFAULT_URL_TIMEOUT, load_image
    from refseg.pipelines.loading import load_referring_segmentation_pipeline
    from refseg.validation import check_sentences
    from refseg.visualization import draw_result, make_grid

    check_sentences(args.text, "--text")
    check_thresholds(args)
    image = load_image(args.image, timeout=DEFAULT_URL_TIMEOUT if args.timeout is None else args.timeout)
    segmenter, path = load_referring_segmentation_pipeline(args.model, args.device)
    results = segmenter(
        [image] * len(args.text),
        list(args.text),
        threshold=args.threshold,
        mask_threshold=args.mask_threshold,
    )
    print(f"refseg predict: model {path}, image {args.image} ({image.width}x{image.height})")
    notice = demo_model_notice(path, segmenter.processor.tokenizer, image)
    if notice:
        print(notice)
    for sentence, result in zip(args.text, results):
        print(describe(sentence, result))
    if args.output:
        scale = max(1, 240 // max(image.width, image.height))
        panels = [draw_result(image, r, s, scale=scale) for s, r in zip(args.text, results)]
        make_grid(panels, columns=min(3, len(panels))).save(args.output)
        print(f"overlay written to {args.output}")
    return 0

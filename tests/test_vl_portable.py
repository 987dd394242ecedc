"""The portable vision attention of models/vl.py: a batch of images goes through the vision
transformer exactly as each image alone would (flashmask's block-diagonal attention), whatever the
images' sizes."""

from __future__ import annotations

import numpy as np


def test_each_image_in_a_batch_sees_only_its_own_patches(workdir):
    import paddle
    from PIL import Image

    from models.loader import load_model
    from models.tiny import ensure_built
    from models.vl_inputs import ImageProcessor

    model_dir = ensure_built("ernie-4.5-tiny-vl", workdir / "models")
    model = load_model(model_dir)
    model.eval()
    processor = ImageProcessor(model_dir)
    rng = np.random.default_rng(3)
    encoded = [processor(Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)))
               for h, w in ((56, 84), (112, 56), (56, 56))]

    def features(items):
        pixels = paddle.to_tensor(np.concatenate([patches for patches, _ in items]))
        grids = paddle.to_tensor(np.asarray([grid for _, grid in items], dtype="int64"))
        with paddle.no_grad():
            return model.vision_forward(pixels, None, None, grids).numpy()

    together = features(encoded)
    alone = np.concatenate([features([item]) for item in encoded])
    assert together.shape == alone.shape and together.shape[0] == sum(p.shape[0] for p, _ in encoded)
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-5)

"""The README's opening picture, from the screenshot the browser test takes.

`tests/test_browser.py` runs the Dashboard in JupyterLab in headless Chromium and saves
`test-artifacts/dashboard.png` (flame and bandwidth charts after a traced run). This
makes `docs/dashboard.png` from it: JupyterLab's "notified about news" prompt, which
Lab shows at the bottom right of a fresh profile, painted out; 900 px wide; 256 colors
(about 35 kB, small enough to commit).

    python scripts/readme_picture.py [test-artifacts/dashboard.png] [docs/dashboard.png]
"""

import sys
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
NEWS_PROMPT = (845 / 1132, 1120 / 1218)  # its top-left corner, as fractions of the screenshot's size
WIDTH = 900


def main(src: Path, dst: Path) -> None:
    im = Image.open(src).convert("RGB")
    x, y = round(NEWS_PROMPT[0] * im.width), round(NEWS_PROMPT[1] * im.height)
    ImageDraw.Draw(im).rectangle([x, y, im.width, im.height], fill="white")
    im = im.resize((WIDTH, round(im.height * WIDTH / im.width)), Image.LANCZOS)
    im.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(dst, optimize=True)


if __name__ == "__main__":
    args = [Path(a) for a in sys.argv[1:]]
    main(args[0] if args else ROOT / "test-artifacts" / "dashboard.png",
         args[1] if len(args) > 1 else ROOT / "docs" / "dashboard.png")

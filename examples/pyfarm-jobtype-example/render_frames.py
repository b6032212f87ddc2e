"""
A script for the example ``python`` job type: one small image per frame.

    python3 render_frames.py --output /renders/test.####.ppm --frame 1

Each frame is a colour gradient that changes with the frame number,
written as a PPM image (the standard library can write it; any viewer
reads it). The script prints the lines the job type reads: progress, the
files written and the frames finished.
"""

import argparse
import re
import sys
from pathlib import Path


def frame_path(pattern, frame):
    """Return ``pattern`` with its run of ``#`` replaced by ``frame``."""
    if "#" not in pattern:
        raise ValueError(f"--output must contain #### for the frame "
                         f"number: {pattern!r}")
    return re.sub(r"#+", lambda m: f"{frame:0{len(m.group())}d}", pattern)


def render(frame, width, height):
    """Return the PPM image of ``frame``, reporting progress as it goes."""
    rows = []
    for y in range(height):
        row = bytearray()
        for x in range(width):
            row += bytes(((x * 255) // max(width - 1, 1),
                          (y * 255) // max(height - 1, 1),
                          (frame * 37) % 256))
        rows.append(bytes(row))
        if (y + 1) % max(height // 4, 1) == 0:
            print(f"pyfarm: progress {100 * (y + 1) // height}%")
    return f"P6 {width} {height} 255\n".encode("ascii") + b"".join(rows)


def main(argv=None):
    """Render the frames named on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True,
                        help="the image path, #### is the frame number")
    parser.add_argument("--size", default="64x36",
                        help="WIDTHxHEIGHT (default 64x36)")
    parser.add_argument("--frame", type=int, action="append", required=True,
                        help="a frame to render (repeat for several)")
    args = parser.parse_args(argv)
    width, height = (int(value) for value in args.size.split("x"))
    for frame in args.frame:
        path = Path(frame_path(args.output, frame))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(render(frame, width, height))
        print(f"pyfarm: wrote {path}")
        print(f"pyfarm: frame {frame} done")
    return 0


if __name__ == "__main__":
    sys.exit(main())

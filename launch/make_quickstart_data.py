"""Regenerate the quickstart dataset (bayesnas_jax/data/quickstart/) from the CIFAR-10
JPEG tarball: ``python launch/make_quickstart_data.py PATH/cifar10-jpeg.tar.gz``."""
import argparse

from bayesnas_jax.data import quickstart


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("tarball", help="tar(.gz) with train/<class>/*.jpg, "
                        "test/<class>/*.jpg")
    parser.add_argument("--out_dir", default=quickstart.DIRECTORY)
    parser.add_argument("--train_per_class", type=int,
                        default=quickstart.DEFAULT_PER_CLASS["train"])
    parser.add_argument("--test_per_class", type=int,
                        default=quickstart.DEFAULT_PER_CLASS["test"])
    args = parser.parse_args()
    result = quickstart.build_quickstart(
        args.tarball, args.out_dir,
        {"train": args.train_per_class, "test": args.test_per_class})
    print(f"wrote {result['files']} images, {result['bytes']:,} bytes, to "
          f"{args.out_dir}")


if __name__ == "__main__":
    main()

"""The datasets of a run (RunConfig): synthetic THUMOS14 / ActivityNet structure by default, real
features in the ActionFormer, G-TAD or BSN layouts by path; windows over long videos; collate.

Errors from the loaders (missing or malformed feature files, bad annotations) are re-raised with
the flags that pointed at them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from rcl_kernels.data import synthetic
from rcl_kernels.data.actionformer import actionformer_dataset
from rcl_kernels.data.annotations import AnnotationError
from rcl_kernels.data.bsn import bsn_dataset
from rcl_kernels.data.dataset import VideoDataset, collate_videos
from rcl_kernels.data.gtad import gtad_thumos14_dataset
from rcl_kernels.data.windows import WindowedDataset
from rcl_kernels.models.config import ConfigError, RunConfig


class OtherItemFeatures(Dataset):
    """The items of `items`, each with the features of the item half the split away (cut or
    zero-padded to its own length): the features-without-signal control."""

    def __init__(self, items: Dataset):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.items[index])
        other = self.items[(index + max(1, len(self.items) // 2)) % len(self.items)]["features"]
        steps = item["features"].shape[1]
        features = torch.zeros_like(item["features"])
        features[:, : min(steps, other.shape[1])] = other[:, :steps]
        item["features"] = features
        return item


@dataclass
class SplitData:
    videos: VideoDataset  # whole videos: ground truth, timelines
    items: Dataset  # what the model sees: windows or whole videos
    pad_to: int | None  # collate length

    @property
    def collate(self):
        return functools.partial(collate_videos, pad_to=self.pad_to)

    def seconds_per_step(self) -> dict[str, float]:
        return {v.video_id: t.seconds_per_step for v, t in zip(self.videos.videos, self.videos.timelines, strict=True)}


def _synthetic_kwargs(run: RunConfig, feature_dim: int) -> dict:
    kw = {"feature_dim": feature_dim, "seed": run.data_seed, "cache": True}
    if run.noise is not None:
        kw["noise"] = run.noise
    if run.boundary_sharpness is not None:
        kw["boundary_sharpness"] = run.boundary_sharpness
    return kw


def load_videos(run: RunConfig, split: str, feature_dim: int) -> VideoDataset:
    """The whole-video dataset of `split` ("train" or "test"); feature_dim: the synthetic data's
    (ModelConfig.feature_dim; real features bring their own)."""
    max_videos = run.max_train_videos if split == "train" else run.max_test_videos
    name = run.train_split if split == "train" else run.effective_test_split
    try:
        if run.dataset == "thumos14-synthetic":
            return synthetic.thumos14(name, max_videos=max_videos, max_steps=run.max_video_steps,
                                      **_synthetic_kwargs(run, feature_dim))
        if run.dataset == "activitynet-synthetic":
            return synthetic.activitynet(name, temporal_scale=run.temporal_scale, max_videos=max_videos,
                                         **_synthetic_kwargs(run, feature_dim))
        if max_videos is not None:
            raise ConfigError(f"--max-{split}-videos: only the synthetic datasets can be cut to their first videos")
        return _real_videos(run, split)
    except (FileNotFoundError, ValueError, AnnotationError, KeyError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise type(exc)(f"{_flags(run)}: {exc}") from exc


def _flags(run: RunConfig) -> str:
    if run.dataset.endswith("-synthetic"):
        return f"--dataset {run.dataset}"
    paths = f"--annotations {run.annotations} --feature-dir {run.feature_dir}"
    return f"--dataset {run.dataset} {paths}" + (f" --video-info {run.video_info}" if run.video_info else "")


def _real_videos(run: RunConfig, split: str) -> VideoDataset:
    subset = run.train_subset if split == "train" else run.test_subset
    if run.dataset == "actionformer":

        default = "Validation" if split == "train" else "Test"
        return actionformer_dataset(run.annotations, run.feature_dir, subset or default, max_steps=run.max_video_steps)
    if run.dataset == "gtad":

        if subset:
            raise ConfigError(f"--{split}-subset: the gtad layout takes one csv per split; pass it as --annotations")
        return gtad_thumos14_dataset(run.annotations, run.feature_dir, max_steps=run.max_video_steps)

    default = "training" if split == "train" else "validation"
    return bsn_dataset(run.annotations, run.video_info, run.feature_dir, subset or default,
                       temporal_scale=run.temporal_scale)


def load_split(run: RunConfig, split: str, *, feature_dim: int) -> SplitData:
    """Videos and the items the model sees: windows of run.effective_window steps (training keeps
    only windows with instances), or whole videos padded to the longest."""
    return split_data(load_videos(run, split, feature_dim), run, split)


def split_data(videos: VideoDataset, run: RunConfig, split: str) -> SplitData:
    """The items the model sees of `videos`, as load_split makes them for `split` ("train": windows
    with instances only; "test": every window)."""
    if len(videos) == 0:
        raise ConfigError(f"{_flags(run)}: the {split} split has no videos")
    if split == "test" and not any(len(videos.instances(i)[0]) for i in range(len(videos))):
        raise ConfigError(f"--test-split {run.effective_test_split}: the split has no annotated instances to "
                          f"evaluate against (ActivityNet's 'testing' subset has none; use 'validation')")
    window = run.effective_window
    if window:
        stride = run.window_stride or max(1, window // 2)
        items = WindowedDataset(videos, window, stride, keep_empty=(split != "train"))
        if len(items) == 0:
            raise ConfigError(f"--window {window}: no {split} window holds an instance")
        return SplitData(videos, _controlled(items, run), window)
    longest = max(t.num_steps for t in videos.timelines)
    return SplitData(videos, _controlled(videos, run), longest)


def _controlled(items: Dataset, run: RunConfig) -> Dataset:
    return OtherItemFeatures(items) if run.feature_control == "other-video" else items


def feature_dim_of(data: SplitData) -> int:
    return int(data.items[0]["features"].shape[0])


def batch_tensors(batch: dict, device: torch.device) -> tuple[torch.Tensor, ...]:
    """features, mask, segments, labels of a collated batch, on `device`."""
    return (batch["features"].to(device, non_blocking=True), batch["mask"].to(device, non_blocking=True),
            batch["segments"].to(device, non_blocking=True), batch["labels"].to(device, non_blocking=True))


def scoring_neighbours(batch: dict, run: RunConfig, device: torch.device) -> torch.Tensor | None:
    """What a detector's `neighbours` argument takes for this batch: its windows' gaps to their
    neighbours (B, 2) when overlapping windows share out the segments (run.window_scoring "once"),
    else None (whole videos, or every window scoring all of its segments)."""
    if run.window_scoring != "once" or "window_neighbours" not in batch:
        return None
    return batch["window_neighbours"].to(device, non_blocking=True)

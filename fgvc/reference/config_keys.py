"""What each recipe key means, one line each, for the generated reference (``docs/reference/recipe-keys.md``).

Types, defaults and choices come from :mod:`fgvc.config_schema`; :mod:`fgvc.docs_gen` refuses a schema key missing
here (and a key here the schema lacks), so tests/test_docs_reference.py fails when a key is added without a meaning.
"""
from __future__ import annotations

__all__ = ["MEANINGS", "SUB_KEY_MEANINGS"]

MEANINGS: dict[str, str] = {
    "seed": "seeds the model's initialisation, data order, augmentation (per seed, epoch and sample) and the "
            "validation split",
    "data.name": "dataset reader: cub200, flowers102, folder, csv, synthetic, unlabeled (or union, written by "
                 "fgvc.extend)",
    "data.root": "folder of the data set (the default `datasets` is also where `fgvc.datasets fetch` puts it)",
    "data.img_size": "side of the square crop the model sees, in pixels",
    "data.crop_pct": "timm's convention: images are resized to img_size / crop_pct on the shorter side before the "
                     "crop (0.875 = 448 / 512)",
    "data.resize": "pins the shorter-side resize before the crop instead of img_size / crop_pct",
    "data.num_workers": "DataLoader worker processes",
    "data.train_split": "split trained on",
    "data.val_split": "split validated on each eval_every epochs and for best.pt (null: none)",
    "data.test_split": "split of the final test metrics in final.json",
    "data.on_bad_image": "a corrupt or unreadable image stops training naming the file (error), or is skipped with a "
                         "warning and listed in RUN/bad_images.tsv (skip)",
    "data.max_images": "use a seeded subset of at most this many images per split (smoke runs); null: all",
    "data.exclude": "a findings.csv of `fgvc.datasets audit` or a text file of image paths left out of the "
                    "training split only",
    "data.args": "the reader's own arguments, checked against its signature (e.g. val_fraction, manifest, "
                 "crop_to_bbox, render_size)",
    "data.augment.hflip": "random horizontal flips in training",
    "data.augment.color_jitter": "colour jitter strength in training (0: off)",
    "data.augment.random_resized_crop": "random-resized crop instead of resize + random crop in training",
    "data.augment.rrc_scale": "area range [min, max] of the random-resized crop",
    "data.augment.simclr.scale": "area range [min, max] of each view's random-resized crop (SimCLR: [0.08, 1]); "
                                 "the data.augment.simclr keys shape the two views model.name simclr trains on "
                                 "(fgvc.data.views), where the other data.augment keys but hflip are unused",
    "data.augment.simclr.jitter": "colour jitter [brightness, contrast, saturation, hue] of each view (SimCLR: "
                                  "[0.4, 0.4, 0.4, 0.1])",
    "data.augment.simclr.jitter_p": "probability of the colour jitter (SimCLR: 0.8)",
    "data.augment.simclr.gray_p": "probability of converting a view to grayscale (SimCLR: 0.2)",
    "data.augment.simclr.blur_p": "probability of a Gaussian blur, kernel ~10 % of the crop (SimCLR: 0.5)",
    "data.augment.simclr.blur_sigma": "range [min, max] of the blur's sigma (SimCLR: [0.1, 2.0])",
    "data.reduced_decode": "decode large JPEGs at 1/2, 1/4 or 1/8 scale, never below the resize; faster, but it "
                           "changes pixels, so it is opt-in",
    "data.cache": "pre-resized copies made by `fgvc.datasets cache`: auto (data.root/.fgvc_cache), off, or a folder",
    "data.sampler": "training batches: random (a seeded shuffle) or pk (P classes x K images)",
    "data.sampler_args.p": "P, classes per batch of the pk sampler (null: train.batch_size / k)",
    "data.sampler_args.k": "K, images per class of the pk sampler",
    "model.name": "registered method: baseline, wsdan, bcnn, racnn, cbam, senet, simclr",
    "model.backbone": "any timm model name",
    "model.pretrained": "start from the backbone's pretrained (ImageNet) weights",
    "model.pretrained_file": "a local weights file (.safetensors) instead of downloading through timm",
    "model.init_from": "a run directory (e.g. a SimCLR run) whose backbone weights replace the pretrained ones "
                       "before training; the rest of the method starts fresh (null: off)",
    "model.backbone_args": "the backbone's own arguments (e.g. out_index, img_size for a ViT at 448 px)",
    "model.args": "the method's own arguments, checked against its signature (e.g. head, head_args, num_maps)",
    "loss.name": "criterion on the logits: cross_entropy, focal, weighted_cross_entropy",
    "loss.args": "the criterion's arguments (e.g. label_smoothing, gamma)",
    "loss.aux": "feature losses on the embedding, each {name, weight, args, lr_scale}: center, triplet, "
                "multi_similarity, proxy_anchor",
    "train.epochs": "epochs to train (with train.stages: their sum)",
    "train.batch_size": "images per optimizer step (under torchrun the global batch)",
    "train.lr": "base learning rate",
    "train.max_steps": "stop after this many optimizer steps (smoke runs); null: no limit",
    "train.device": "auto (CUDA when present, else the CPU with a warning), cpu or cuda",
    "train.optimizer": "sgd, adamw, lars or lamb (timm's); no weight decay on biases and norms, which LARS/LAMB "
                       "also leave out of their layer-wise adaptation",
    "train.momentum": "SGD momentum",
    "train.nesterov": "Nesterov momentum for SGD",
    "train.weight_decay": "weight decay (not on biases and norms)",
    "train.backbone_lr_scale": "the backbone's learning rate relative to train.lr",
    "train.layer_decay": "layer-wise learning-rate decay of the backbone: lr x backbone_lr_scale x decay^(L - i); "
                         "null: off",
    "train.freeze_norm": "BatchNorm layers stay in eval mode, keeping the pretrained running statistics",
    "train.scheduler": "cosine, step (decay_rate every decay_epochs) or none; stepped per update",
    "train.warmup_epochs": "linear warm-up epochs from warmup_lr",
    "train.warmup_lr": "learning rate at the start of the warm-up",
    "train.min_lr": "the cosine schedule's final learning rate",
    "train.decay_epochs": "step schedule: epochs between decays",
    "train.decay_rate": "step schedule: factor applied at each decay",
    "train.amp": "mixed precision: none, auto (bf16 on CUDA, fp32 on the CPU), bf16, fp16 (CUDA only)",
    "train.grad_accum": "batches accumulated per optimizer step",
    "train.clip_grad": "gradient-norm clipping bound; null: off",
    "train.ema": "keep an EMA of the weights (timm ModelEmaV3); final metrics then use it",
    "train.ema_decay": "EMA decay per step",
    "train.channels_last": "channels-last memory format: auto (on for CNNs, off for transformers), true, false",
    "train.compile": "torch.compile the model",
    "train.deterministic": "deterministic algorithms (warn only) and cuDNN benchmark off",
    "train.on_nan": "a NaN/Inf loss stops training keeping the last good checkpoint (stop), or skips the step "
                    "(skip; gives up after 20 in a row)",
    "train.mixup": "Mixup alpha (timm); 0: off",
    "train.cutmix": "CutMix alpha (timm); 0: off",
    "train.stages": "training stages, each {name, epochs, lr, backbone_lr_scale}, e.g. B-CNN's classifier then "
                    "finetune; they own the epoch count",
    "train.eval_every": "validate every this many epochs (and after the last)",
    "train.checkpoint_every_steps": "also save checkpoints/last.pt every this many steps mid-epoch; 0: per epoch",
    "train.threads": "torch CPU threads; 0: torch's default",
    "train.tensorboard": "per-epoch scalars and attention maps of 4 validation images to RUN/tb/ (needs the "
                         "explain extra)",
    "eval.tta_flip": "average the predictions of the image and its horizontal flip",
    "eval.batch_size": "images per evaluation batch in each process; 0: train.batch_size split over the processes",
    "eval.protocols": "evaluation protocols run on the test split after training: classification, retrieval, "
                      "knn, linear",
    "output.root": "folder the run directories go to",
    "output.name": "run directory name prefix; null: the recipe's file name",
    "distill": "knowledge distillation from a trained run: null (off) or the keys below",
}

SUB_KEY_MEANINGS: dict[str, str] = {
    "stages.name": "the method's stage name (e.g. classifier, finetune; RA-CNN: apn_pretrain, cls, apn, main)",
    "stages.epochs": "epochs of this stage",
    "stages.lr": "the stage's learning rate (default train.lr)",
    "stages.backbone_lr_scale": "the stage's backbone learning rate relative to its lr (default train.backbone_lr_scale)",
    "aux.name": "the feature loss: center, triplet, multi_similarity, proxy_anchor",
    "aux.weight": "its weight in the total loss",
    "aux.args": "its own arguments (e.g. margin, mining)",
    "aux.lr_scale": "learning rate of the loss's own parameters (centers, proxies) relative to train.lr",
    "distill.teacher": "the teacher's run directory",
    "distill.alpha": "weight of the distillation term against the label loss",
    "distill.temperature": "softmax temperature of teacher and student",
    "distill.checkpoint": "the teacher's checkpoint: last or best",
}

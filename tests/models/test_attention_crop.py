"""Attention-guided geometry: crop boxes above a threshold (max or min-max normalised), drop masks, bilinear crops."""
import torch

from fgvc.models.attention_crop import attention_crop_boxes, attention_drop_masks, box_areas, crop_and_resize


def test_crop_boxes_contain_thresholded_region_with_padding():
    maps = torch.zeros(2, 20, 40)
    maps[0, 5:9, 10:21] = 1.0  # rows 5..8, cols 10..20
    maps[0, 6, 12] = 2.0  # the max: region >= 0.5*2 is all of the block
    maps[1, 0, 0] = 1.0  # second sample: a single corner pixel
    boxes = attention_crop_boxes(maps, torch.tensor([0.5, 0.5]), padding=0.1)
    # x: [10 - 4, 21 + 4], y: [5 - 2, 9 + 2] (10 % of W = 4, of H = 2)
    torch.testing.assert_close(boxes[0], torch.tensor([6.0, 3.0, 25.0, 11.0]))
    torch.testing.assert_close(boxes[1], torch.tensor([0.0, 0.0, 5.0, 3.0]))  # clipped at the border
    # a higher threshold keeps only the peak
    tight = attention_crop_boxes(maps[:1], torch.tensor([0.9]), padding=0.0)
    torch.testing.assert_close(tight[0], torch.tensor([12.0, 6.0, 13.0, 7.0]))
    # an all-zero map crops the whole image
    torch.testing.assert_close(attention_crop_boxes(torch.zeros(1, 20, 40), torch.tensor([0.5]), 0.1)[0],
                               torch.tensor([0.0, 0.0, 40.0, 20.0]))


def test_crop_boxes_random_maps_contain_region():
    torch.manual_seed(3)
    maps = torch.rand(4, 16, 16) ** 4
    thr = torch.rand(4) * 0.5 + 0.3
    boxes = attention_crop_boxes(maps, thr, padding=0.0)
    for b in range(4):
        ys, xs = torch.nonzero(maps[b] >= thr[b] * maps[b].max(), as_tuple=True)
        x1, y1, x2, y2 = boxes[b].tolist()
        assert x1 == xs.min() and y1 == ys.min() and x2 == xs.max() + 1 and y2 == ys.max() + 1


def test_drop_masks_zero_exactly_the_thresholded_region():
    torch.manual_seed(1)
    maps = torch.rand(3, 8, 8)
    thr = torch.tensor([0.2, 0.5, 0.9])
    keep = attention_drop_masks(maps, thr)
    for b in range(3):
        expected = (maps[b] < thr[b] * maps[b].max()).float()
        assert torch.equal(keep[b], expected)
    assert torch.equal(attention_drop_masks(torch.zeros(1, 4, 4), torch.tensor([0.3])), torch.ones(1, 4, 4))


def test_crop_and_resize_geometry():
    img = torch.arange(64.0).reshape(1, 1, 8, 8)
    full = crop_and_resize(img, torch.tensor([[0.0, 0.0, 8.0, 8.0]]))
    torch.testing.assert_close(full, img)
    quad = crop_and_resize(img, torch.tensor([[4.0, 0.0, 8.0, 4.0]]), size=(4, 4))
    torch.testing.assert_close(quad, img[:, :, :4, 4:])


def test_minmax_normalisation_localises_a_map_that_is_positive_everywhere():
    maps = torch.full((1, 10, 10), 5.0)
    maps[0, 2:4, 6:9] = 6.0  # a dense map: 5 everywhere, 6 on the object
    assert attention_crop_boxes(maps, torch.tensor([0.1]), 0.0).tolist() == [[0.0, 0.0, 10.0, 10.0]]  # max: all
    torch.testing.assert_close(attention_crop_boxes(maps, torch.tensor([0.1]), 0.0, "minmax"),
                               torch.tensor([[6.0, 2.0, 9.0, 4.0]]))
    torch.testing.assert_close(box_areas(torch.tensor([[6.0, 2.0, 9.0, 4.0]]), (10, 10)), torch.tensor([0.06]))

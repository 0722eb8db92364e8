"""Model factories the tests name by import path ("tests.factories:NAME"), as a user names
their own (docs/extending.md)."""
import torch.nn as nn
import torchvision


def deep_linear(depth: int = 25, dim: int = 10) -> nn.Module:
    """The paper's deep linear network as a plain nn.Sequential of bias-free square layers."""
    return nn.Sequential(*[nn.Linear(dim, dim, bias=False) for _ in range(depth)])


def resnet18_gray(num_classes: int = 10) -> nn.Module:
    """torchvision's ResNet-18 for one-channel images (scikit-learn's digits)."""
    net = torchvision.models.resnet18(num_classes=num_classes)
    net.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    return net


def not_a_module():
    return "a string"


def shared_layer() -> nn.Module:
    lin = nn.Linear(4, 4)
    return nn.Sequential(lin, nn.ReLU(), lin)

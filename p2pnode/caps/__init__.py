"""Capabilities: the ad model, the hardware probe, validation and the live table (spec 02)."""

from p2pnode.caps.model import AD_TYPE, AD_VERSION, CapabilityAd, Gpu
from p2pnode.caps.table import CapTable, ValidatedAd, validate_ad

__all__ = ["AD_TYPE", "AD_VERSION", "CapTable", "CapabilityAd", "Gpu", "ValidatedAd",
           "validate_ad"]

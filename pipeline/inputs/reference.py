"""The reference files a report prices with: the price catalog, the deployment and cost-center
maps, the provisioned capacity and its PTU weights, loaded into one `Reference`."""

from __future__ import annotations

from pathlib import Path

from pipeline.domain.costing import Reference
from pipeline.domain.mappings import CostCenterMap, DeploymentMap
from pipeline.inputs.capacity import load_capacity
from pipeline.inputs.catalog import load_price_catalog, shipped_catalog_path
from pipeline.inputs.maps import load_cost_centers, load_deployments


def load_reference(prices: Path | None, deployments: Path | None, cost_centers: Path | None,
                   capacity: Path | None = None, weights: Path | None = None,
                   idle_owner: str | None = None) -> Reference:
    """The catalog (shipped one by default), the maps (empty when the file is absent) and the
    provisioned capacity (none when its file is absent; PTU weights: the shipped ones by default)."""
    return Reference(
        catalog=load_price_catalog(prices or shipped_catalog_path()),
        deployments=load_deployments(deployments) if deployments and deployments.exists() else DeploymentMap(),
        cost_centers=(load_cost_centers(cost_centers) if cost_centers and cost_centers.exists()
                      else CostCenterMap()),
        capacity=load_capacity(capacity if capacity and capacity.exists() else None, weights, idle_owner),
    )

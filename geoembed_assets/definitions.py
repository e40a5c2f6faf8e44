import dagster as dg

from geoembed_assets.assets import catalog_assets, downstream_assets, embedding_assets, landcover_assets, report_assets, size_assets
from geoembed_assets.partitions import scene_partitions
from geoembed_assets.resources import default_resources
from geoembed_assets.sensors import landing_sensor

partitioned_assets = dg.load_assets_from_modules([embedding_assets, size_assets, landcover_assets])

embed_scenes = dg.define_asset_job(
    "embed_scenes",
    selection=dg.AssetSelection.assets(*partitioned_assets),
    partitions_def=scene_partitions,
    description="Scene -> chips -> complexity -> size calibration -> VAE checkpoints -> embeddings, "
    "for one region x month.",
)

defs = dg.Definitions(
    assets=[*partitioned_assets, *dg.load_assets_from_modules([catalog_assets, report_assets, downstream_assets])],
    jobs=[embed_scenes],
    sensors=[landing_sensor],
    resources=default_resources(),
)

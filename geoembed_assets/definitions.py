import dagster as dg

from geoembed_assets.assets import (
    catalog_assets, downstream_assets, embedding_assets, landcover_assets, report_assets, size_assets,
)
from geoembed_assets.console import geoembed_console
from geoembed_assets.partitions import scene_partitions
from geoembed_assets.resources import default_resources
from geoembed_assets.schedules import retrain_and_refresh, retrain_drifting_schedule
from geoembed_assets.sensors import landing_sensor
from geoembed_assets.stac_sensor import StacSource, stac_sensor

partitioned_assets = dg.load_assets_from_modules([embedding_assets, size_assets, landcover_assets])

embed_scenes = dg.define_asset_job(
    "embed_scenes",
    selection=dg.AssetSelection.assets(*partitioned_assets),
    partitions_def=scene_partitions,
    description="Scene -> chips -> complexity -> size calibration -> VAE checkpoints -> embeddings, "
    "for one region x month.",
)

build_catalog = dg.define_asset_job(
    "build_catalog",
    selection=dg.AssetSelection.assets("mlm_stac_items"),
    description="Rebuild the STAC catalog from every partition's outputs on disk (run after embed_scenes).",
)

defs = dg.Definitions(
    assets=[*partitioned_assets, *dg.load_assets_from_modules([catalog_assets, report_assets, downstream_assets])],
    jobs=[embed_scenes, build_catalog, retrain_and_refresh],
    schedules=[retrain_drifting_schedule],
    sensors=[landing_sensor, stac_sensor],
    resources={**default_resources(), "stac_source": StacSource()},
    # used only by runs whose config names it (`geoembed run`); other runs keep Dagster's default console logger
    loggers={"console": dg.colored_console_logger, "geoembed_console": geoembed_console},
)

"""What more than one experiment uses: checking a config's models before anything is written,
and the log axes of their plots. Experiments import this module, never one another."""

from __future__ import annotations

from jconv import models, summary
from jconv.runner import ConfigError, setting_error

__all__ = ["check_models", "log_axis"]


def check_models(config, model_names, variants, widths, input_size, in_channels: int, keys: dict,
                 norm: str = "paper") -> None:
    """Raises ConfigError unless every model of ``model_names`` builds (abstractly: no memory, no
    compute) with every variant at the narrowest of ``widths`` and its ``input_size(model)``;
    ``keys`` names the config keys of ``model``, ``variant``, ``width`` and ``input_size`` (which
    may hold ``{model}``)."""
    if not model_names or any(m not in models.MODELS for m in model_names):
        raise ConfigError(f"--config.{keys['model']}={tuple(model_names)!r}; expected names of "
                          f"{models.list_models()}")
    if not variants or not widths:
        raise ConfigError(f"--config.{keys['variant']}={tuple(variants)}, --config.{keys['width']}="
                          f"{tuple(widths)}; expected one or more of each")
    for w in widths:
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not w > 0:
            raise ConfigError(f"--config.{keys['width']}={tuple(widths)}: {w!r}; expected numbers > 0")
    for model in model_names:
        size_key = keys["input_size"].format(model=model)
        for variant in variants:
            settings = summary.config(model)
            settings.update(variant=variant, width=float(min(widths)), input_size=input_size(model),
                            in_channels=in_channels, num_classes=10, norm=norm)
            try:
                summary.build_abstract(settings)
            except (TypeError, ValueError) as error:
                words = {"variant": keys["variant"], "width": keys["width"], "input_size": size_key,
                         "does not fit": size_key, **({"norm": "norm"} if "norm" in config else {})}
                raise setting_error(error, config, words) from None


def log_axis(ax, axis="x", fraction=False):
    """A log ``axis`` labelled at 1, 2 and 5 times each power of ten (at most eight labels, no
    minor labels): in short engineering notation (``2M``, ``500k``), or as plain numbers
    (``0.5``) for a ``fraction``."""
    from matplotlib import ticker

    getattr(ax, f"set_{axis}scale")("log")
    target = getattr(ax, f"{axis}axis")
    subs = (1.0, 2.0, 3.0, 5.0, 7.0) if fraction else (1.0, 2.0, 5.0)
    target.set_major_locator(ticker.LogLocator(subs=subs, numticks=8))
    target.set_major_formatter(ticker.FormatStrFormatter("%.2g") if fraction
                               else ticker.EngFormatter(sep=""))
    target.set_minor_formatter(ticker.NullFormatter())

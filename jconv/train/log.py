"""Training logs for :mod:`jconv.train`: JSON lines, the tqdm bar and the images/s clock.

``train_log.jsonl`` gets one JSON line per logged step (step, epoch, loss, lr, images_per_s,
time), flushed as written, from process 0 only.
"""

from __future__ import annotations

import json
import time

import jax


class Logger:
    """One JSON line per logged step, flushed as written; only process 0 writes."""

    def __init__(self, path):
        self._file = open(path, "a", buffering=1) if jax.process_index() == 0 else None

    def write(self, record):
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()

    def close(self):
        if self._file is not None:
            self._file.close()


class Monitor:
    """Watches the steps: NaN/inf checks, log lines, the progress bar and the clock.

    Losses stay on device until :meth:`check_and_log`. The clock starts after the first
    (compiling) step, and checkpoint writes are taken out of the rates and the step time.

    Attributes:
      final_loss: the loss of the last checked step (or of the checkpoint resumed from).
      first_step_s: seconds from after any restore to the end of the first step, compilation
        included.
      bar: the tqdm bar, from the first step until :meth:`close_bar`.

    Args:
      logger: where log lines go.
      config: the run's :class:`jconv.train.TrainConfig`.
      schedule: the learning-rate schedule, for the ``lr`` of each line.
      steps_per_epoch: for the ``epoch`` of each line.
      nonfinite_error: ``(step, loss)`` → the exception to raise for a NaN/inf step.
      final_loss: the loss of the checkpoint resumed from, or None.
      show_bar: show the bar (else it is created disabled).
    """

    def __init__(self, logger, config, schedule, steps_per_epoch, nonfinite_error, final_loss, show_bar):
        self.final_loss = final_loss
        self.first_step_s = None
        self.bar = None
        self._logger, self._config, self._schedule = logger, config, schedule
        self._steps_per_epoch, self._nonfinite_error, self._show_bar = steps_per_epoch, nonfinite_error, show_bar
        self._pending = []  # (step, loss, finite) still on device
        self._t_run = time.perf_counter()
        self._t0 = self._last_t = self._last_step = None
        self._save_s = self._total_save_s = 0.0

    def step_done(self, done, loss, finite):
        """Records step ``done``'s loss; the first step starts the clock and the bar."""
        self._pending.append((done, loss, finite))
        if self._t0 is not None:
            self.bar.update(1)
            return
        from tqdm.auto import tqdm

        loss.block_until_ready()
        self._t0 = self._last_t = time.perf_counter()
        self._last_step = done
        self.first_step_s = self._t0 - self._t_run
        self.bar = tqdm(total=self._config.steps, initial=done, unit="step", disable=not self._show_bar,
                        dynamic_ncols=True, desc="train")

    def check_and_log(self, force_log):
        """Checks the pending steps and logs the last if ``force_log`` or it is a log step.

        Raises:
          Exception: the one ``nonfinite_error`` gives for the first pending step whose loss or
            parameters are NaN/inf.
        """
        if not self._pending:
            return
        values = jax.device_get(self._pending)
        self._pending.clear()
        for s, value, finite in values:
            value = float(value)
            if not bool(finite):
                raise self._nonfinite_error(s, value)
            self.final_loss = value
        s, value = values[-1][0], float(values[-1][1])
        if force_log or s % self._config.log_every == 0:
            self._log(s, value)

    def _log(self, s, value):
        now = time.perf_counter()
        rate = None
        if self._last_step is not None and s > self._last_step:
            dt = now - self._last_t - self._save_s
            rate = self._config.batch_size * (s - self._last_step) / dt if dt > 0 else None
        if self._t0 is not None:
            self._last_t, self._last_step, self._save_s = now, s, 0.0
        self._logger.write({"step": s, "epoch": (s - 1) // self._steps_per_epoch, "loss": value,
                            "lr": float(self._schedule(s - 1)), "images_per_s": rate, "time": now - self._t_run})
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{value:.4f}", img_s="-" if rate is None else f"{rate:.0f}", refresh=False)

    def saved(self, seconds):
        """Takes a checkpoint write of ``seconds`` out of the clock."""
        self._save_s += seconds
        self._total_save_s += seconds

    def close_bar(self):
        """Closes the bar, if open."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def timing(self, t_end, timed):
        """``(step_time_s, images_per_s)`` over the ``timed`` steps after the first, or Nones if none."""
        if timed <= 0:
            return None, None
        elapsed = t_end - self._t0 - self._total_save_s
        return elapsed / timed, self._config.batch_size * timed / elapsed

"""Running a project on its own: schedules, sensors and backfills turn time and changes into runs."""

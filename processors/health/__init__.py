"""The health role (``hookline health``): failure streaks per webhook from the results topic."""

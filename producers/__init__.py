"""What upstream services and account owners use to put data into hookline."""

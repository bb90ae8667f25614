"""One thin module per AWS service. botocore errors become labkit errors here, nowhere else."""

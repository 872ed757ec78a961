"""Config folder of the MOTO bundle (algo and preset groups)."""

"""Mining stand-ins: a local Earth Engine, Drive and SFTP target, and the sample-polygon generator."""

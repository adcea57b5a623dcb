"""One module per stage; each is a plain function (context) -> summary that writes only its folder."""

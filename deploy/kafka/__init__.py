"""The local broker's build files (pom.xml, server.properties template, log4j2 config), shipped as package data."""

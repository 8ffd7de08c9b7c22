{
  "targets": [
    {
      "target_name": "execd_spawn",
      "sources": ["channel.c"],
      "cflags": ["-std=gnu11", "-g", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    },
    {
      "target_name": "execd-spawn-helper",
      "type": "executable",
      "sources": ["helper.c"],
      "cflags": ["-std=gnu11", "-g", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}

variable "names" {
  type        = map(string)
  description = "Identity names by role: function, apim, capture."
}

"""email_service.security"""
